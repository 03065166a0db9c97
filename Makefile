# Two entry points: `make demo` (both stages on their embedded default) and `make test` (the whole suite).
# Both create .venv and install the project into it when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bamco_fast-installed

.PHONY: install demo test lint bench info clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch and scikit-build-core go in first: the extension builds without isolation, against this torch.
$(STAMP): $(BIN)/python pyproject.toml CMakeLists.txt $(wildcard csrc/*.cpp csrc/*.h csrc/cmake/*.py)
	$(BIN)/python -m pip install --quiet "torch>=2.4,<3" "torchvision>=0.19" "scikit-build-core>=0.10"
	$(BIN)/python -m pip install --quiet --no-build-isolation -e ".[dev,knowledge]"
	touch $(STAMP)

install: $(STAMP)

# The two stages on the packaged VQA-RAD subset: pretrain a knowledge space, then fine-tune and evaluate VQA.
demo: install
	rm -rf runs/demo
	$(BIN)/python -m bamco_fast.train pretrain --out runs/demo/pretrain
	$(BIN)/python -m bamco_fast.train vqa --knowledge-space runs/demo/pretrain --set out=runs/demo/vqa

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	TRITON_INTERPRET=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

bench: install
	$(BIN)/python -m pytest benchmarks/ --benchmark-only

info: install
	$(BIN)/python -m bamco_fast.info

clean:
	rm -rf build $(VENV)
