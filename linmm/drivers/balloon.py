"""A virtio balloon with free page reporting (v5.7 drivers/virtio/virtio_balloon.c)
and the hypervisor ("host") behind it.

Guest side: :func:`virtballoon_probe` negotiates the features the host offers
(virtballoon_validate + virtballoon_probe), writes the poison value when
PAGE_POISON is negotiated and registers free page reporting when REPORTING
is.  Host side: :class:`BalloonHost` drops the backing of every reported range
(the frames read back as zeros, or as the poison byte when the guest asked for
it) and keeps the list of what it was handed.

    host = BalloonHost(features={VIRTIO_BALLOON_F_REPORTING})
    vb = virtballoon_probe(k, host)       # registers with page reporting
    k.run(2000)                           # first pass
    host.discarded_bytes, host.reported   # what the guest handed back
"""
from __future__ import annotations

from ..errors import ENOSPC
from ..mm import page_reporting as pr

VIRTIO_BALLOON_F_MUST_TELL_HOST = 0
VIRTIO_BALLOON_F_STATS_VQ = 1
VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2
VIRTIO_BALLOON_F_FREE_PAGE_HINT = 3
VIRTIO_BALLOON_F_PAGE_POISON = 4
VIRTIO_BALLOON_F_REPORTING = 5
DRIVER_FEATURES = frozenset((VIRTIO_BALLOON_F_MUST_TELL_HOST, VIRTIO_BALLOON_F_STATS_VQ,
                             VIRTIO_BALLOON_F_DEFLATE_ON_OOM, VIRTIO_BALLOON_F_FREE_PAGE_HINT,
                             VIRTIO_BALLOON_F_PAGE_POISON, VIRTIO_BALLOON_F_REPORTING))
PAGE_POISON = 0xAA


def _bool_param(v) -> bool:
    """kstrtobool() of a boot parameter value (None: absent or bare)."""
    if not v:
        return False
    return v[0] in "1yY" or v[:2].lower() == "on"


class BalloonHost:
    """The hypervisor end of the balloon's reporting virtqueue."""

    def __init__(self, features=(VIRTIO_BALLOON_F_REPORTING,), reporting_vq_size: int = 128):
        self.features = set(features)
        self.reporting_vq_size = reporting_vq_size
        self.poison_val: int | None = None  # config space, written by the guest
        self.discarded: dict[int, int] = {}  # guest pfn -> order of ranges dropped
        self.reported: list[tuple[int, int]] = []  # every (pfn, order) handed over, in order
        self.reported_bytes = 0
        self.kicks = 0
        self.fail_add: list[int] = []  # errnos for the next virtqueue_add_inbuf() calls

    @property
    def discarded_bytes(self) -> int:
        return sum(4096 << o for o in self.discarded.values())

    def is_discarded(self, pfn: int) -> bool:
        return any(p <= pfn < p + (1 << o) for p, o in self.discarded.items())

    def virtqueue_add_inbuf(self, nents: int) -> int:
        if self.fail_add:
            return -abs(self.fail_add.pop(0))
        if nents > self.reporting_vq_size:
            return -28  # -ENOSPC
        return 0

    def process(self, k, ranges: list[tuple[int, int]]) -> None:
        """The host handles the kicked buffer: drop each range's backing memory."""
        self.kicks += 1
        fill = None if not self.poison_val else bytes([self.poison_val & 0xFF]) * 4096
        for pfn, order in ranges:
            end = pfn + (1 << order)
            for p in [p for p in self.discarded if pfn <= p < end]:
                del self.discarded[p]
            self.discarded[pfn] = order
            self.reported.append((pfn, order))
            self.reported_bytes += 4096 << order
            for p in range(pfn, end):
                if fill is None:
                    k.frames.clear(p)
                else:
                    k.frames.write(p, 0, fill)


class VirtioBalloon:
    """struct virtio_balloon (the reporting part)."""

    def __init__(self, k, host: BalloonHost):
        self.k = k
        self.host = host
        self.features = set(host.features) & DRIVER_FEATURES
        self.pr_dev_info = pr.PageReportingDevInfo(self.virtballoon_free_page_report, "virtio_balloon")
        self.registered = False
        self.reported_pages = 0  # 4 KiB pages handed back through reporting

    def has(self, bit: int) -> bool:
        return bit in self.features

    def virtballoon_validate(self) -> None:
        params = self.k.config.params
        want_init_on_free = _bool_param(params.get("init_on_free"))
        page_poisoning = _bool_param(params.get("page_poison"))
        if not want_init_on_free and not page_poisoning:
            self.features.discard(VIRTIO_BALLOON_F_PAGE_POISON)
        elif not self.has(VIRTIO_BALLOON_F_PAGE_POISON):
            self.features.discard(VIRTIO_BALLOON_F_REPORTING)

    def virtballoon_free_page_report(self, prdev, sgl: list, nents: int) -> int:
        k = self.k
        err = self.host.virtqueue_add_inbuf(nents)
        if err:
            k.printk_once(f"WARNING: CPU: {k.current_cpu()} PID: {k.current_ctx().pid} at "
                          f"drivers/virtio/virtio_balloon.c:185 virtballoon_free_page_report+0x9a/0xb0")
            return err
        ranges = [(e.pfn, e.order) for e in sgl[:nents]]
        self.host.process(k, ranges)  # virtqueue_kick() + wait_event(vb->acked, ...)
        self.reported_pages += sum(1 << o for _, o in ranges)
        return 0

    def remove(self) -> None:
        """virtballoon_remove(): unregister reporting."""
        if self.registered:
            pr.page_reporting_unregister(self.k, self.pr_dev_info)
            self.registered = False


def virtballoon_probe(k, host: BalloonHost) -> VirtioBalloon:
    """Probe the device: negotiate, write the poison value, register reporting.
    Raises ENOSPC if the reporting queue is shorter than 32 entries, EBUSY if
    another reporting device is registered."""
    pr.init(k)
    vb = VirtioBalloon(k, host)
    vb.virtballoon_validate()
    if vb.has(VIRTIO_BALLOON_F_PAGE_POISON):
        want_init_on_free = _bool_param(k.config.params.get("init_on_free"))
        host.poison_val = 0 if want_init_on_free else PAGE_POISON
    if vb.has(VIRTIO_BALLOON_F_REPORTING):
        if host.reporting_vq_size < pr.PAGE_REPORTING_CAPACITY:
            raise ENOSPC("virtio_balloon: reporting virtqueue has fewer than 32 entries")
        pr.page_reporting_register(k, vb.pr_dev_info)
        vb.registered = True
    return vb

