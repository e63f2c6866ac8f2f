# The two commands of the README. Each sets up .venv on first use (scripts/install.sh).
VENV ?= .venv

.PHONY: bench test install

install:
	@scripts/install.sh $(VENV)

# Main job: every baseline and oracle on the embedded synthetic val split, then the leaderboard.
bench: install
	$(VENV)/bin/t2s bench

# The whole test suite (pytest exits 5 when it collects nothing: make treats that as failure).
test: install
	$(VENV)/bin/python -m pytest
