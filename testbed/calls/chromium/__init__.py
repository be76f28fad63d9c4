"""Chromium (libwebrtc) call endpoints: ``engine: chromium`` (docs/calls.md, "Engines").

* ``endpoint`` -- the endpoint process (``python -m testbed.calls.chromium.endpoint``)
* ``browser``  -- find, launch (owned by the endpoint), kill Chromium
* ``cdp``      -- the DevTools protocol over ``--remote-debugging-pipe``
* ``stats``    -- getStats -> the endpoint report's records (sans-IO)
* ``audio``    -- the speech-like WAV the fake microphone plays
* ``page.js``  -- the page: getUserMedia + RTCPeerConnection, driven over DevTools

Importing this package imports nothing of the endpoint's (no asyncio subprocess work).
"""
