# Two commands do all the set-up: `make demo` and `make test`. Both create or reuse .venv.
# The interpreter: the version .python-version names (pyenv and uv read that file too), else
# any python3.13 / python3.12 / python3 on PATH or in pyenv's versions that is >= 3.12.
# Override with `make PYTHON=/path/to/python3.12 test`.
PYTHON ?= $(shell sh tools/find-python.sh)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export OMP_NUM_THREADS ?= 1
# PyTensor's C backend only builds small helper functions here (nutpie samples with bayesgmm's
# Numba kernel or JAX); an empty blas__ldflags skips its BLAS search and the warning that
# pip-installed PyTensor prints.
export PYTENSOR_FLAGS ?= compiledir=$(CURDIR)/.cache/pytensor,blas__ldflags=

.PHONY: demo test test-slow validate validate-missing bench bench-mclust lint clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "bayesgmm needs Python >= 3.12 and none was found: install one (pyenv install 3.12, or uv python install 3.12) or run make PYTHON=/path/to/python3.12"; exit 1; }
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
		|| { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bayesgmm report --components 1-4 --out out/report.html

# The suite runs on TEST_WORKERS pytest-xdist workers (2 by default; 0: serial, auto: one per
# core), each test file whole on one worker so its module fixtures are built once. The workers
# share one Numba cache: a kernel gives the same bits compiled or loaded from the cache
# (bayesgmm/_numba_cache.py), so a bit-for-bit test holds whichever worker compiled what. Cold
# fresh clone on 2 cores, 2026-12-05: 18.6 min of pytest with a cache per worker (35
# CPU-minutes), 17.7 shared (32).
# `bayesgmm cache --warm` compiles the kernels first, EM's and the Bayesian half's in two
# processes side by side, so that the workers load them instead of each compiling the same
# ones at once (the tests of compiling itself use caches of their own): cold fresh clone,
# 2026-12-05, 2.4 min of warm-up, then 12.3 min of pytest (15.0-17.3 without it).
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/bayesgmm cache --warm
	$(BIN)/python -m pytest -m "not slow" -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

# SD_PRIOR=resolution (default): the HalfNormal with a fixed barrier floor, as the package's default
# prior (GMMPriors.sd_prior); SD_PRIOR=halfnormal without it; SD_PRIOR=inverse_gamma each variance ~ InvGamma
SD_PRIOR ?= resolution
validate: $(STAMP)
	$(BIN)/python -m bayesgmm.validation --simulations 100 --sd-prior $(SD_PRIOR) --out validation

# Cells removed completely at random (10/25/40%): bias, RMSE and coverage of EM with missing cells
# and the posterior against dropping rows and mean imputation (the committed run is in
# docs/validation/missing_summary.txt, with its command)
validate-missing: $(STAMP)
	$(BIN)/python -m bayesgmm.validation.missing_study --replicates 200 --posterior-replicates 20 --draws 250 --tune 250 --out validation

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_em.py

# EM sweeps beside R's mclust (Rscript + r-cran-mclust; committed numbers without them) and sklearn
bench-mclust: $(STAMP)
	$(BIN)/python benchmarks/bench_mclust.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .cache .pytest_cache
