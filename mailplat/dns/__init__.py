"""DNS lookups for mail routing: MX hosts of a domain and addresses of a host."""
