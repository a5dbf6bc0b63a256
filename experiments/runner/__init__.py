"""skrr-run's machinery: the job checked once (job, checks), the content-addressed stages and their
store (stages), the results store (results), every plan's D on one yardstick (plan_d), the efficiency
report (efficiency), W&B logging (logging_wandb) and SLURM job states (slurm)."""
