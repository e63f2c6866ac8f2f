# The two commands of the README. Each sets up .venv on first use (scripts/install.sh).
VENV ?= .venv

.PHONY: bench test test-min install

install:
	@scripts/install.sh $(VENV)

# Main job: every baseline and oracle on the embedded synthetic val split, then the leaderboard.
bench: install
	$(VENV)/bin/t2s bench

# The whole test suite (pytest exits 5 when it collects nothing: make treats that as failure).
test: install
	$(VENV)/bin/python -m pytest

# The same suite with the oldest versions setup.cfg allows (constraints/minimum.txt), in its
# own environment: proves that every floor is true.
test-min:
	PIP_CONSTRAINT=constraints/minimum.txt T2S_TORCH_SPEC="torch==2.5.1 torchvision==0.20.1" scripts/install.sh .venv-min
	.venv-min/bin/python -m pytest
