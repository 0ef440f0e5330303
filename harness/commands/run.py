"""The default command: render → train → evaluate, recorded as one run."""
from harness.config import load_config
from harness.experiment import ex


def run_stages(cfg, run=None) -> dict:
    """Prepare data, render what is missing, train in ``train.mode`` and evaluate; return the result."""
    from harness.commands.evaluate import evaluate_stage
    from harness.commands.render import render_stage
    from harness.commands.train import train_stage
    from harness.data import prepare

    config = load_config(cfg)  # validated and read once: typed, frozen sections for the stages
    prepared = prepare(config.data, config.seed)
    renders = render_stage(config, run=run, prepared=prepared)
    trained = train_stage(config, run=run, prepared=prepared, renders=renders)
    return evaluate_stage(config, prepared, renders, trained=trained, run=run)


@ex.main
def run(_config, _run):
    """Render the dataset, train the model and evaluate it on the test split (one run record)."""
    return run_stages(dict(_config), _run)
