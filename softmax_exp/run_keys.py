"""The names a job's MLflow run is written with, shared by the one that writes it (tracking.py) and those that
read runs back (summary.py, report.py, resume.py), so that a reader needs none of the writer's imports."""

SWEEP_TAG = "softmax_exp.sweep"  # marks parent runs, so the report can find the latest sweep
JOB_TAG = "softmax_exp.job"  # a job's choices (JSON): which job of its sweep the run is, for a resume
TRIAL_TAG = "softmax_exp.trial"  # a search's job: the number of the trial it is one seed of
PRUNED_TAG = "pruned_at_epoch"  # a search's job that its pruner stopped after this epoch (halving.py)
OWN_FAILURE_TAG = "softmax_exp.own_failure"  # a run that FAILED for its configuration's own reason (errors.JobError)
GROUPS = ("loss", "labels", "optimizer")  # config groups whose chosen option is a param of its own
FINAL_KEYS = ("train_loss", "train_acc", "val_acc", "test_acc")  # logged as final_KEY; val_acc: a validation set
