# Two entry points: `make demo` (both stages on their embedded default) and `make test` (the whole suite).
# Both create .venv and install the project into it when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bamco_fast-installed

.PHONY: install demo test lint bench info clean tiny-results

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
	$(BIN)/python -m bamco_fast.train vqa --knowledge-space runs/demo/pretrain --out runs/demo/vqa

# The README's VQA results table: tiny local models on CPU on the real datasets in ../shared/data, each
# run on one thread; independent runs in parallel with `make -j2 tiny-results` (about 10 minutes on 2 cores).
# Writes runs/tiny/results.md. Not the paper's setting: see the README.
TINY := runs/tiny
TRAIN := HF_HUB_OFFLINE=1 $(BIN)/python -m bamco_fast.train
TINY_PRETRAIN := --alignment --set tiny.enabled=true --set model.num_images=64 --set model.intra_image_size=32 \
	--set model.feature_size=1 --set data.augment_reference=false --set data.cache_image_features=true \
	--set data.cache_resolution=64 --set loop.batch_size=16 --set loop.max_steps=80 --set optim.lr=2e-3 \
	--set loop.num_threads=1 --set loop.progress=false
TINY_VQA := --set loop.epochs=3 --set loop.num_threads=1 --set loop.progress=false
QUESTION_ONLY := --set model.use_image=false --set model.use_intra_class=false
PLAIN := --set model.plain_towers=true --set model.use_intra_class=false

runs/knowledge/slake-%.json: | install
	$(BIN)/python -m bamco_fast.knowledge build --dataset slake --root ../shared/data/slake --split $* \
		--kb slake-kg:../shared/data/slake/KG --out $@

$(TINY)/pretrain-slake/matching.json: runs/knowledge/slake-train.json runs/knowledge/slake-validate.json
	rm -rf $(@D)
	$(TRAIN) pretrain --preset slake --out $(@D) $(TINY_PRETRAIN)

$(TINY)/pretrain-vqa-rad/matching.json: | install
	rm -rf $(@D)
	$(TRAIN) pretrain --preset vqa-rad --out $(@D) $(TINY_PRETRAIN)

# $(1) run name, $(2) dataset, $(3) pretraining run, $(4) its knowledge space, $(5) options. The table reads
# each run's report_<split>.json, whichever split the copy evaluates on (Slake: test when the copy has one).
define tiny_vqa
$(TINY)/$(1)/.done: $(TINY)/$(3)/matching.json
	rm -rf $(TINY)/$(1)
	$(TRAIN) vqa --preset $(2)-tiny --knowledge-space $(TINY)/$(4) --set out=$(TINY)/$(1) $(TINY_VQA) $(5)
	touch $$@
TINY_RUNS += $(1)
endef
$(eval $(call tiny_vqa,slake-bamco,slake,pretrain-slake,pretrain-slake,))
$(eval $(call tiny_vqa,slake-bamco-entities,slake,pretrain-slake,pretrain-slake,--set model.knowledge_input=entities))
$(eval $(call tiny_vqa,slake-alignment,slake,pretrain-slake,pretrain-slake/alignment,))
$(eval $(call tiny_vqa,slake-plain-towers,slake,pretrain-slake,pretrain-slake,$(PLAIN)))
$(eval $(call tiny_vqa,slake-question-only,slake,pretrain-slake,pretrain-slake,$(QUESTION_ONLY)))
$(eval $(call tiny_vqa,vqa-rad-bamco,vqa-rad,pretrain-vqa-rad,pretrain-vqa-rad,))
$(eval $(call tiny_vqa,vqa-rad-bamco-entities,vqa-rad,pretrain-vqa-rad,pretrain-vqa-rad,--set model.knowledge_input=entities))
$(eval $(call tiny_vqa,vqa-rad-alignment,vqa-rad,pretrain-vqa-rad,pretrain-vqa-rad/alignment,))
$(eval $(call tiny_vqa,vqa-rad-plain-towers,vqa-rad,pretrain-vqa-rad,pretrain-vqa-rad,$(PLAIN)))
$(eval $(call tiny_vqa,vqa-rad-question-only,vqa-rad,pretrain-vqa-rad,pretrain-vqa-rad,$(QUESTION_ONLY)))
# PathVQA: no knowledge source can be built offline; plain towers (those of the Slake run).
$(eval $(call tiny_vqa,pathvqa-plain-towers,pathvqa,pretrain-slake,pretrain-slake,))
$(eval $(call tiny_vqa,pathvqa-question-only,pathvqa,pretrain-slake,pretrain-slake,$(QUESTION_ONLY)))

tiny-results: $(foreach r,$(TINY_RUNS),$(TINY)/$(r)/.done)
	$(BIN)/python -m bamco_fast.evaluate table --baselines --out $(TINY)/results.md \
		$(foreach r,$(TINY_RUNS),$(r)=$(wildcard $(TINY)/$(r)/report_*.json))

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
