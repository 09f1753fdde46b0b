"""Run in a fresh process by test_long_exact_steps.py (ggml reads GGML_CPU_TILED_MM once per process):
an unrepacked engine with exact speculation, its probe, and one greedy edit plain and with a prediction.

    python -m tests.integration.long_exact_steps GGUF  ->  one JSON line on stdout
"""

from __future__ import annotations

import asyncio
import colorsys
import inspect
import json
import os
import sys
from pathlib import Path

from coderapi.engines.base import SamplingParams
from coderapi.engines.llama_cpp import LlamaCppEngine

SOURCE = inspect.getsource(colorsys)[:1500]
PROMPT = ("<|im_start|>user\nRename the function rgb_to_hls to rgb_to_hls_color. Return the whole file, "
          f"nothing else.\n\n```python\n{SOURCE}```<|im_end|>\n<|im_start|>assistant\n")


async def main(gguf: Path) -> dict:
    engine = LlamaCppEngine(gguf, n_parallel=1, n_ctx_per_seq=2048, ngram_speculation=False, repack=False,
                            draft_gate=False)
    await engine.start()
    try:
        prompt = engine.tokenize(PROMPT)
        greedy = SamplingParams(max_tokens=240, temperature=0.0)
        plain = [e async for e in engine.generate(prompt, greedy)]
        prediction = tuple(engine.tokenize(f"```python\n{SOURCE}```"))
        predicted = [e async for e in engine.generate(prompt, SamplingParams(max_tokens=240, temperature=0.0,
                                                                             prediction_ids=prediction))]
        return {"tiled_switch": os.environ.get("GGML_CPU_TILED_MM"),
                "checkpoints": engine._worker.exact_rows.checkpoints, "beyond": engine._worker.exact_rows.beyond,
                "plain": [e.token_id for e in plain], "predicted": [e.token_id for e in predicted],
                "accepted": predicted[-1].accepted_prediction_tokens,
                "rejected": predicted[-1].rejected_prediction_tokens}
    finally:
        await engine.close()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(Path(sys.argv[1])))))
