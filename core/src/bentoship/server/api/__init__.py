"""The control plane's HTTP API: thin routes that parse a request, call a service, render JSON."""
