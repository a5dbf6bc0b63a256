"""Make this folder's expected scores with GenEval 2's own evaluation.py, unmodified (see README.md).

    python make_expected.py /path/to/GenEval2/evaluation.py      # in a venv with transformers 4.57.0

1. writes prompts.jsonl (this project's own made-up rows: atom counts 3-10, every skill, counts
   one..ten) and images/<i>.png (drawn shapes, several sizes),
2. builds the tiny judge (make_tiny_judge.py) into tiny_judge/ and links it into a private Hugging
   Face cache as "Qwen/Qwen3-VL-8B-Instruct", the id evaluation.py loads,
3. runs evaluation.py --method soft_tifa_gm on them offline and keeps its per-question soft scores
   as expected_scores.json (the list of lists it writes to --output_file), its printed score in
   expected_score.txt.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
THINGS = ["cat", "dog", "cup", "car", "tree", "bird", "book", "lamp"]
SIZES = [(32, 32), (48, 40), (64, 48), (40, 64)]


def rows() -> list[dict]:
    out = []
    for atoms in range(3, 11):
        vqa, skills = [], []
        for k in range(atoms // 2):
            vqa += [[f"Are there any {THINGS[k]}s in the image?", "Yes"],
                    [f"How many {THINGS[k]}s are in the image?", NUMBERS[(k + atoms) % 10]]]
            skills += ["object", "count"]
        vqa.append([f"Is the {THINGS[0]} red?", "Yes"])
        skills.append("attribute")
        if atoms % 2:
            vqa.append([f"Is the {THINGS[0]} left of the {THINGS[1]}?", "Yes"])
            skills.append("position")
        out.append({"prompt": f"made-up prompt with {atoms} atoms", "atom_count": atoms, "vqa_list": vqa,
                    "skills": skills})
    out.append({"prompt": "a dog chasing a cat", "atom_count": 3, "skills": ["object", "object", "verb"],
                "vqa_list": [["Are there any dogs in the image?", "Yes"], ["Are there any cats in the image?", "Yes"],
                             ["Is the dog chasing the cat?", "Yes"]]})
    return out


def image(i: int) -> Image.Image:
    w, h = SIZES[i % len(SIZES)]
    img = Image.new("RGB", (w, h), (20 * i % 256, 90, 160))
    draw = ImageDraw.Draw(img)
    draw.rectangle([w // 5, h // 4, w // 2, h // 2 + i % 7], fill=(230, 40 + 15 * i, 30))
    draw.ellipse([w // 2, h // 3, w - 3, h - 2], fill=(40, 200, 20 * i % 256))
    return img


def main(evaluation_py: str) -> None:
    data = rows()
    (HERE / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    (HERE / "images").mkdir(exist_ok=True)
    for i in range(len(data)):
        image(i).save(HERE / "images" / f"{i:05d}.png")
    judge = HERE / "tiny_judge"
    shutil.rmtree(judge, ignore_errors=True)
    subprocess.run([sys.executable, str(HERE / "make_tiny_judge.py"), str(judge)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp) / "hub" / "models--Qwen--Qwen3-VL-8B-Instruct" / "snapshots" / ("0" * 40)
        shutil.copytree(judge, snapshot)
        (snapshot.parents[1] / "refs").mkdir()
        (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
        paths = {r["prompt"]: str(HERE / "images" / f"{i:05d}.png") for i, r in enumerate(data)}
        (Path(tmp) / "images.json").write_text(json.dumps(paths))
        env = {**os.environ, "HF_HOME": tmp, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
        run = subprocess.run([sys.executable, evaluation_py, "--benchmark_data", str(HERE / "prompts.jsonl"),
                              "--image_filepath_data", str(Path(tmp) / "images.json"), "--method", "soft_tifa_gm",
                              "--output_file", str(HERE / "expected_scores.json")],
                             env=env, check=True, capture_output=True, text=True)
    score = [line for line in run.stdout.splitlines() if line.startswith("Score:")]
    (HERE / "expected_score.txt").write_text(score[-1] + "\n")
    print(score[-1])


if __name__ == "__main__":
    main(sys.argv[1])
