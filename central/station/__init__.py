"""The Pass Office's badge issuance station (``portier-badge``, issue #17, docs/badges.md).

It runs at the Pass Office desk, never on a door: a desk NFC reader (:mod:`.pcsc`, or the
emulated card of ``--demo``) as a :class:`~portier_common.ntag424.session.Transport`, the central's
admin API for the card's keys and the badge's registration (:mod:`.issue`), and the command
(:mod:`.cli`). It lives in the ``central`` package, which a device's image does not install.
"""
