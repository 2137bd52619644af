"""Embed the edgec runtime in an app: load an `.edgec` file and stream a continuation.

    edgec export --format int8 --to edgec -o smollm2-int8.edgec
    python examples/generate.py smollm2-int8.edgec "It is a truth universally acknowledged"

Only numpy and the small `tokenizers` package are needed at run time (no torch, no transformers).
"""

import sys

from edgec.runtime import load


def main() -> None:
    path, prompt = sys.argv[1], " ".join(sys.argv[2:]) or "Once upon a time"
    model = load(path)  # backend="auto": the fastest backend present
    print(prompt, end="", flush=True)
    for piece in model.generate(prompt, max_new_tokens=64, temperature=0.7, top_p=0.9, seed=0):
        print(piece, end="", flush=True)
    print()


if __name__ == "__main__":
    main()
