"""Stand-ins for Google's front ends, speaking their real wire formats, for the tests (and for trying a Vertex
deployment on a laptop): the Vertex AI endpoint front end and the Cloud Storage JSON API."""
