"""The named values a setting may take, known without torch: the checks run before it is imported."""
DTYPES = ("float32", "bfloat16", "float16")  # a model's weights (model.dtype), a search's compute dtype
CERTIFIED = "certified"  # scored in bf16, the close calls again in float32 (skrr.search.certified)
COMPUTE_DTYPES = (*DTYPES, "auto", CERTIFIED)  # method.compute_dtype: auto = the model's dtype where it runs fast
DEFAULT_COMPUTE_DTYPE = "float32"
METRICS = ("mse", "cosine")  # D's distance (method.metric)
