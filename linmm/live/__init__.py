"""linmm.live: run the same scenarios on this machine's real kernel (as root).

    from linmm.live import LiveKernel
    with LiveKernel() as k:          # EPERM "live mode needs root ..." without root
        t = k.spawn("a")             # a real process, same API as linmm.Task
        ...

See docs/LIVE.md for how it works and its safety rules.
"""
from .kernel import ROOT_MESSAGE, LiveKernel, recover_journals, unavailable_reason
from .task import LiveError, LiveLimitError, LiveSafetyError, LiveTask

__all__ = ["LiveKernel", "LiveTask", "LiveError", "LiveLimitError", "LiveSafetyError",
           "unavailable_reason", "recover_journals", "ROOT_MESSAGE"]
