"""Test support shared by the ml-service, backend and deployment tests (never shipped in the service's wheel or
image): starting and stopping real servers, Debian's redis-server, and stand-ins for Google's front ends that
speak their real wire formats (the Vertex AI endpoint front end and the Cloud Storage JSON API)."""
