# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: setup demo test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup-system.sh
	scripts/setup-system.sh
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# A Sparta SmallCNN, PGD-AT on a Fashion-MNIST subset, then clean / PGD-20 / AutoAttack accuracy.
demo: setup
	rm -rf runs/demo
	$(VENV)/bin/sparta train --dataset fashion-mnist --model smallcnn --act sparta --method pgd \
		--eps 0.1 --epochs 2 --subset 2000 --batch-size 64 --attack-steps 3 --eps-warmup-epochs 0.5 \
		--eval-n 200 --out runs/demo
	$(VENV)/bin/sparta eval runs/demo --attacks clean,fgsm,pgd,cw --n 300
	$(VENV)/bin/sparta eval runs/demo --attacks autoattack --n 20

test: setup
	$(VENV)/bin/ruff check src tests scripts benchmarks
	$(VENV)/bin/ruff format --check src tests scripts benchmarks
	$(PY) -m mypy
	$(PY) -m pytest -n auto

clean:
	rm -rf $(VENV) runs
