"""The lab: what the lessons add on top of the library.

- :mod:`wslab.lab.widget`: the chat widget (``chat()``, :class:`ChatWidget`);
- :mod:`wslab.lab.browser`: :class:`BrowserSocket`, a real browser ``WebSocket``;
- :mod:`wslab.lab.lesson`: the chat server the lessons share;
- :mod:`wslab.lab.tap`: the live table of a :class:`~wslab.wiretap.WireTap`;
- :mod:`wslab.lab.checks`: the exercises' checks;
- :mod:`wslab.lab.exercises`: the teachers' tool (student notebooks from solutions).

Nothing is imported here: the widgets need the ``lab`` extra, and a server or a
script must not pay for them.
"""
