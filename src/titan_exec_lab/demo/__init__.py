"""The scripted end-to-end demo (`titan-exec demo`): `run` drives it, `flow` is its script,
`report` prints what happened, `streamcheck` the final checks (from `titan_exec_lab.verify`),
`upstream` and `upstream_brain` the brain's part."""
