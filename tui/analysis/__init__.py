"""The analysis room: what the specialisation, KL, probe and compare panes show, and the jobs that compute it.

One way through, from a key to a redrawn pane::

    pane (screens/panes/) --calls--> App methods of AnalysisController (controller.py)
        --starts--> a thread job (jobs.py): core.report computes, the job posts a message (messages.py)
        --> the controller's handler for that message updates the run's AnalysisData (state.py)
        --> posts AnalysisChanged to the screen on top --> the pane redraws from AnalysisData.

Jobs never touch widgets or state: they only post messages. State is plain data (no textual). Every
number comes from :mod:`moe_tui.core` (``report_tables``, ``compare_tables``, ``write_report``); panes only
pivot, sort, shade and plot those tables.
"""
