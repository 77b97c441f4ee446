"""The local engine: a language or vision-language model run in-process with transformers.

`LocalGenerator` is a model family (`local_llm`, kind `generator`): the ModelManager loads it,
counts its bytes against the budget and evicts it like any other model. `LocalEngine` is the
engine face the pool fails over to: it leases the generator through `manager.use` and runs it in
the inference pool. Answers with an output type are grammar-constrained (constrained.py), so
they always parse and validate, even from a random model.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import xgrammar as xgr
from PIL import Image as PILImage
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from zooserve.catalog.engines import EngineSpec
from zooserve.core.errors import ConfigError, InvalidInput, MissingDependency, ZooError
from zooserve.engines.client import Engine, schema_instruction
from zooserve.engines.constrained import (
    CLOSING_CHARS,
    SchemaLogitsProcessor,
    finish_reserve,
    single_token_ids,
)
from zooserve.engines.types import (
    EngineError,
    EngineFailure,
    Generation,
    GenerationRequest,
    parse_output,
)
from zooserve.families.base import ModelAdapter
from zooserve.manager import ModelManager

DEFAULT_MAX_NEW_TOKENS = 1024
#: Errors no other engine fixes by being asked: the config or the install must change.
FINAL_CODES = frozenset({"config_error", "missing_dependency", "family_not_implemented"})


class LocalGenerator(ModelAdapter):
    """Kind `generator`: chat messages (+ images) -> text, or JSON valid for an output type.

    Loads `AutoModelForImageTextToText` + its processor when the checkpoint is a vision-language
    model (Llava, Qwen2.5-VL, Qwen3-VL: the processor's chat template places the images), else
    `AutoModelForCausalLM` + its tokenizer. `quantization: 4bit|8bit` loads through
    bitsandbytes on CUDA only.
    """

    family = "local_llm"
    kind = "generator"

    def load(self) -> None:
        config = AutoConfig.from_pretrained(self.source, local_files_only=True)
        self.vision = config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
        model_class = AutoModelForImageTextToText if self.vision else AutoModelForCausalLM
        quantization = self._quantization_config()
        model: Any
        if quantization is None:
            model = model_class.from_pretrained(
                self.source, dtype=self.dtype, local_files_only=True
            )
            model = model.to(self.device)
        else:  # bitsandbytes places the weights itself; .to() is refused on quantized models
            model = model_class.from_pretrained(
                self.source,
                dtype=self.dtype,
                local_files_only=True,
                quantization_config=quantization,
                device_map={"": self.device},
            )
        self.model = model.eval()
        self.processor = (
            AutoProcessor.from_pretrained(self.source, local_files_only=True)
            if self.vision
            else AutoTokenizer.from_pretrained(self.source, local_files_only=True)
        )
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        stop_ids = self.model.generation_config.eos_token_id
        if stop_ids is None:
            stop_ids = self.tokenizer.eos_token_id
        self.stop_ids = [stop_ids] if isinstance(stop_ids, int) else list(stop_ids)
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        info = xgr.TokenizerInfo.from_huggingface(
            self.tokenizer, vocab_size=vocab_size, stop_token_ids=self.stop_ids
        )
        self.grammars = xgr.GrammarCompiler(info)
        self.closing_ids = single_token_ids(self.tokenizer, CLOSING_CHARS)
        quote = single_token_ids(self.tokenizer, ('"',))
        self.quote_id = quote[0] if quote else None
        self.banned_ids = sorted(set(self.tokenizer.all_special_ids) - set(self.stop_ids))

    def _quantization_config(self) -> Any:
        mode = self.spec.quantization
        if mode is None:
            return None
        if not self.device.startswith("cuda"):
            raise ConfigError(
                f"models.{self.spec.name}.quantization: {mode} needs a CUDA device (bitsandbytes); "
                f"this service runs on {self.device}. Remove the key or set device: cuda",
                {"model": self.spec.name, "quantization": mode, "device": self.device},
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise MissingDependency(
                f"models.{self.spec.name}.quantization: {mode} needs bitsandbytes: "
                "pip install bitsandbytes",
                {"model": self.spec.name, "install": "pip install bitsandbytes"},
            )
        from transformers import BitsAndBytesConfig

        if mode == "4bit":
            return BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=self.dtype,
            )
        return BitsAndBytesConfig(load_in_8bit=True)

    def torch_modules(self) -> list[torch.nn.Module]:
        model = getattr(self, "model", None)
        return [model] if model is not None else []

    @classmethod
    def estimate_bytes(cls, source: str, device: str) -> int | None:
        """Weight-file bytes, halved on CUDA only for fp32 checkpoints (language models mostly
        ship bf16, which loads at the size it is stored). Quantization only makes it smaller."""
        size = super().estimate_bytes(source, "cpu")
        if size is None or not device.startswith("cuda"):
            return size
        config = Path(source) / "config.json"
        stored = ""
        if config.is_file():
            data = json.loads(config.read_text())
            stored = str(data.get("dtype") or data.get("torch_dtype") or "")
        return size // 2 if stored in ("", "float32") else size

    def generate(self, request: GenerationRequest) -> Generation:
        """Blocking: run in the manager's inference pool."""
        started = time.perf_counter()
        inputs = self.preprocess(request)
        prompt_length = int(inputs["input_ids"].shape[1])
        max_new_tokens = request.max_tokens or DEFAULT_MAX_NEW_TOKENS
        processors = []
        if request.output is not None:
            schema = request.schema or {}
            reserve = finish_reserve(schema)
            max_new_tokens = max(max_new_tokens, reserve + 64)  # room to write, then to finish
            grammar = self.grammars.compile_json_schema(
                schema, any_whitespace=False, strict_mode=True
            )
            processors.append(
                SchemaLogitsProcessor(
                    grammar,
                    prompt_length=prompt_length,
                    max_new_tokens=max_new_tokens,
                    reserve=reserve,
                    closing_token_ids=self.closing_ids,
                    quote_token_id=self.quote_id,
                    banned_token_ids=self.banned_ids,
                )
            )
        new_tokens = self.forward(inputs, request, max_new_tokens, processors)
        text = str(self.tokenizer.decode(new_tokens, skip_special_tokens=True))
        stopped = bool(len(new_tokens)) and int(new_tokens[-1]) in self.stop_ids
        generation = Generation(
            text=text,
            model=self.spec.name,
            engine="",
            seconds=time.perf_counter() - started,
            finish_reason="stop" if stopped or len(new_tokens) < max_new_tokens else "length",
            usage={"prompt_tokens": prompt_length, "completion_tokens": len(new_tokens)},
        )
        if request.output is not None:
            generation.data, generation.invalid_reason = parse_output(text, request.output)
        return generation

    def preprocess(self, request: GenerationRequest) -> dict[str, torch.Tensor]:
        """Render the chat with the model's template; images become PIL images for the processor."""
        if request.images and not self.vision:
            raise InvalidInput(
                f"model {self.spec.name!r} is a text-only model; it cannot see images"
            )
        instruction = schema_instruction(request)
        chat: list[dict[str, Any]] = []
        if instruction and not any(m.role == "system" for m in request.messages):
            chat.append({"role": "system", "content": instruction.strip()})
        for message in request.messages:
            text = message.text + instruction if message.role == "system" else message.text
            if not self.vision:
                chat.append({"role": message.role, "content": text})
                continue
            parts: list[dict[str, Any]] = []
            for index, image in enumerate(message.images):
                if index < len(message.captions):
                    parts.append({"type": "text", "text": message.captions[index]})
                parts.append({"type": "image", "image": PILImage.fromarray(image)})
            parts.append({"type": "text", "text": text})
            chat.append({"role": message.role, "content": parts})
        encoded: Any = self.processor.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        return dict(encoded)

    def forward(
        self,
        inputs: dict[str, torch.Tensor],
        request: GenerationRequest,
        max_new_tokens: int,
        processors: list[SchemaLogitsProcessor],
    ) -> torch.Tensor:
        """The only step on the device. Returns the new token ids (1-D, on the CPU)."""
        on_device = {
            key: value.to(self.device, self.dtype)
            if value.is_floating_point()
            else value.to(self.device)
            for key, value in inputs.items()
        }
        temperature = 0.0 if request.temperature is None else request.temperature
        sampling: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            sampling.update(temperature=temperature, top_p=1.0, top_k=0)
        generator_seed = request.seed
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        with torch.inference_mode():
            output = self.model.generate(
                **on_device,
                max_new_tokens=max_new_tokens,
                logits_processor=processors or None,
                pad_token_id=self.stop_ids[0]
                if self.tokenizer.pad_token_id is None
                else self.tokenizer.pad_token_id,
                eos_token_id=self.stop_ids,
                **sampling,
            )
        return output[0, inputs["input_ids"].shape[1] :].cpu()


class LocalEngine(Engine):
    """The in-process engine: leases a `LocalGenerator` through the manager for each request."""

    def __init__(self, spec: EngineSpec, manager: ModelManager) -> None:
        super().__init__(spec)
        self.manager = manager

    async def generate(self, request: GenerationRequest) -> Generation:
        request = replace(
            request,
            max_tokens=request.max_tokens or self.spec.max_tokens,
            temperature=self.spec.temperature
            if request.temperature is None
            else request.temperature,
        )
        try:
            async with self.manager.use(request.model) as adapter:
                if not isinstance(adapter, LocalGenerator):
                    raise self.fail(
                        f"model {request.model!r} is family {adapter.family!r}; the local engine "
                        f"needs family {LocalGenerator.family!r}",
                        retryable=False,
                    )
                generation = await self.manager.infer(adapter.generate, request)
        except EngineError:
            raise
        except ZooError as exc:
            raise EngineError(
                EngineFailure(
                    self.name,
                    f"{exc.code}: {exc.message}",
                    retryable=exc.status not in (400, 413, 422) and exc.code not in FINAL_CODES,
                    status=exc.status,
                    code=exc.code,
                )
            ) from exc
        generation.engine = self.name
        return generation

    async def probe(self) -> str:
        missing = [m for m in self.spec.models if not self.manager.available(m)]
        if missing:
            raise self.fail(f"weights not present or disabled: {', '.join(missing)}")
        cpu = not self.manager.device.startswith("cuda")
        quantized = [m for m in self.spec.models if self.manager.state(m).spec.quantization]
        if cpu and quantized:
            raise self.fail(
                f"quantization needs CUDA (bitsandbytes); {', '.join(quantized)} cannot load "
                f"on {self.manager.device}",
                retryable=False,
            )
        return "in-process"
