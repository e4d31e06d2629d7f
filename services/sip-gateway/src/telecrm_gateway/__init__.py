"""The SIP gateway service: a pjsua2 endpoint that takes calls and publishes call events."""
