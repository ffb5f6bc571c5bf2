# Exercise pipeline (included by the top Makefile; PY and STAMP come from there).
#
#   make student                         student + autograder versions of every master notebook
#   make grade SUBMISSIONS=<folder>      grade a folder of submitted notebooks offline
#                                        -> <folder>/grades.csv (one row per check, with feedback)
#                                           <folder>/summary.csv (one row per submission)
#   make test-exercises                  only the exercise tests (tests/test_exercises.py)
#
# Options: GRADES=<file.csv> (where grades.csv goes), JOBS=<n> (submissions graded in parallel),
# GRADE_TIMEOUT=<seconds per submission>.

EX_DIR      := exercises
EX_MASTERS  := $(sort $(wildcard $(EX_DIR)/[0-9][0-9]_*_exercises.ipynb))
EX_NAMES    := $(notdir $(EX_MASTERS:.ipynb=))
EX_ZIPS     := $(EX_NAMES:%=$(EX_DIR)/autograder/%-autograder.zip)
EX_PIPELINE := $(EX_DIR)/pipeline.py
EX_SUPPORT  := $(EX_DIR)/exercise_checks.py $(EX_PIPELINE)
JOBS          ?= 1
GRADE_TIMEOUT ?= 600

.PHONY: student grade test-exercises

student: $(EX_ZIPS)

# One otter assign per chapter; the student notebook is written with its autograder zip.
$(EX_DIR)/autograder/%-autograder.zip: $(EX_DIR)/%.ipynb $(EX_SUPPORT) $(STAMP)
	$(PY) $(EX_PIPELINE) student $<

grade: student
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=<folder of .ipynb>"; exit 2; }
	@test -d "$(SUBMISSIONS)" || { echo "SUBMISSIONS=$(SUBMISSIONS) is not a folder"; exit 2; }
	$(PY) $(EX_PIPELINE) grade "$(SUBMISSIONS)" --jobs $(JOBS) --timeout $(GRADE_TIMEOUT) \
		$(if $(GRADES),--csv "$(GRADES)")

test-exercises: $(STAMP)
	$(PY) -m pytest tests/test_exercises.py -q
