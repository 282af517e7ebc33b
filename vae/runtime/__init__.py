"""The stage runtime: what turns the ML code into DVC stages.

The command line of a stage (``cli``), the machine it runs on (``machine``), stopping cleanly on
Ctrl-C or SIGTERM (``interrupt``), dvc.yaml read as data (``dvc_yaml``), the train stage's run
key (``run_key``) and its outputs (``record``), and the offline plots page (``plots_page``).
The ML code in ``vae`` imports nothing from here.
"""
