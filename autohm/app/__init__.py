"""autohm's Streamlit app: a study's Pareto front, its progress, every trial, one trial's
allocation and measurements, and the ablation report; downloads of a trial's configuration and
of the trial table.

    autohm app [--storage URL] [--study NAME] [--baselines FILE] [--port P]
    streamlit run app.py          # in a checkout; reads AUTOHM_STORAGE, AUTOHM_STUDY,
                                  # AUTOHM_BASELINES

streamlit_app.py is the script Streamlit runs and main.py the page: the sidebar (sidebar.py),
the cached reads of the storage (cache.py), then one module per tab (pareto_page, progress_page,
trials_page, trial_page, ablation_page). What they show of a study comes from views.py and is
drawn by figures.py, both without Streamlit. This file imports nothing, so that `autohm app`
can check the storage through views.py without loading Streamlit."""
