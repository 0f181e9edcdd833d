"""The script Streamlit runs (`autohm app` starts `streamlit run` on this file); the page is
autohm.app.main."""

from autohm.app.main import main

main()
