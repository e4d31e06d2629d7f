"""The SIP side: a pjsua2 endpoint on its own thread, and the plain facts it reports."""
