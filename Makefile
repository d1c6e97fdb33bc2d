# `make ci` is exactly what .ci/run does.
.PHONY: ci test lint-plans schema docs

ci:
	.ci/run

test:
	scripts/test.sh

lint-plans:
	cargo run --quiet -- lint plans/ --deny warnings

# Regenerate the files a test compares with the code.
schema:
	cargo run --quiet -- schema > schemas/plan.schema.json

docs:
	for kind in $$(cargo run --quiet -- steps --format json | python3 -c 'import json,sys; print(" ".join(k["kind"] for k in json.load(sys.stdin)))'); do \
	  cargo run --quiet -- steps $$kind --format markdown > docs/steps/$$kind.md; done
