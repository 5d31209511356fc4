"""The naive baseline for bench/serve.py: a spam model served the way tutorials deploy one.

    python bench/naive_server.py RUN_DIR [--port 8001] [--mode sync|async] [--threads N]

FastAPI + uvicorn, the fine-tuned model loaded from a shipml run directory into eager fp32 PyTorch
(transformers' AutoModel from the run's encoder config + the run's weights, mean pooling and the linear head,
as shipml trained it), the Hugging Face tokenizer (PreTrainedTokenizerFast over the run's tokenizer.json,
head truncation at the run's max length), one forward per request, no batching, no ONNX, no quantization.

The route and answer are the shape of shipml's `/v1/models/{name}/predict` (`{"inputs": [text, ...]}` in;
model, version, predictions out; `X-Model-Version` header), so the same load generator drives both.
`--mode sync` (default) is a plain `def` endpoint (FastAPI runs it in its thread pool, so concurrent
requests run concurrent forwards); `--mode async` is an `async def` endpoint (one forward at a time, on the
event loop). torch uses all cores unless --threads is given.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from safetensors.torch import load_file
from torch import nn


class SpamClassifier(nn.Module):
    """encoder -> masked mean of the token vectors -> linear head (the run's weights load into it as saved)."""

    def __init__(self, encoder: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(0.0)
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))


def load(run: Path) -> tuple[SpamClassifier, Any, list[str], int]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig, AutoModel, PreTrainedTokenizerFast

    folder = run / "model"
    task = json.loads((folder / "task.json").read_text())
    config = AutoConfig.for_model(**json.loads((folder / "encoder_config.json").read_text()))
    model = SpamClassifier(AutoModel.from_config(config), len(task["classes"]))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    max_length = int(task["preprocessing"]["max_length"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), model_max_length=max_length,
                                        cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]")
    return model, tokenizer, list(task["classes"]), max_length


class PredictRequest(BaseModel):
    inputs: list[str]


def create_app(run: Path, mode: str) -> FastAPI:
    model, tokenizer, classes, max_length = load(run)
    app = FastAPI(title="naive spam server")

    def predict_texts(texts: list[str]) -> list[dict[str, Any]]:
        out = []
        for text in texts:  # one forward per input, as the tutorials do
            enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            with torch.no_grad():
                logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            proba = torch.softmax(logits, dim=-1)[0].tolist()
            best = max(range(len(classes)), key=lambda i: proba[i])
            out.append({"label": classes[best], "confidence": proba[best],
                        "probabilities": dict(zip(classes, proba, strict=True))})
        return out

    def answer(name: str, texts: list[str]) -> JSONResponse:
        body = {"model": name, "version": 0, "predictions": predict_texts(texts)}
        return JSONResponse(body, headers={"X-Model-Version": "0"})

    if mode == "async":
        @app.post("/v1/models/{name}/predict")
        async def predict_async(name: str, body: PredictRequest) -> JSONResponse:
            return answer(name, body.inputs)
    else:
        @app.post("/v1/models/{name}/predict")
        def predict_sync(name: str, body: PredictRequest) -> JSONResponse:
            return answer(name, body.inputs)

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    with torch.no_grad():  # warm-up
        predict_texts(["warm up " * 200])
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished shipml run directory (model/model.safetensors)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--mode", choices=["sync", "async"], default="sync")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's, all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    uvicorn.run(create_app(args.run, args.mode), host=args.host, port=args.port, access_log=False,
                log_level="warning")


if __name__ == "__main__":
    main()
