"""Request and response bodies (pydantic), apart from the routes that use them."""
