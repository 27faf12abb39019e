# The course's commands. `make course` runs every solution notebook; `make test` runs every test.
PROFILE ?= workshop
PY := .venv/bin/python

.PHONY: setup course test lab lessons record data
setup:
	@bash scripts/setup.sh

course: setup            ## execute all solutions (workshop profile) -> build/
	$(PY) -m course_lib.notebooks course --profile $(PROFILE)

test: setup              ## unit tests + nbval over solutions and lessons
	$(PY) -m pytest

lab: setup               ## open JupyterLab on the lessons
	.venv/bin/jupyter lab lessons

lessons: setup           ## regenerate lessons/ from solutions/
	$(PY) -m course_lib.notebooks lessons

record: setup            ## store reference outputs for nbval, then regenerate lessons
	$(PY) -m course_lib.notebooks record

data: setup              ## regenerate the shipped dataset snapshot from its seed
	$(PY) -m course_lib.data --write
