"""The messaging service: fax, SMS and e-mail: send, receive, delivery reports."""
