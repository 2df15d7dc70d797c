"""The postoffice connector: local delivery into Maildirs."""
