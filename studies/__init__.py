"""The experiments that chose the pipeline's settings and the reports they feed (reports/): each runnable by
the command its report names. Nothing in the pipeline (training, export, app) imports them."""
