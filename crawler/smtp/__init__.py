"""SMTP/STARTTLS probing: reply parsing, the client protocol, TLS setup, facts."""
