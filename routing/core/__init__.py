"""What every layer shares: the error hierarchy (`errors`), the record of one request (`exchange`), what
an API path is (`paths`) and how a JSON answer is written (`responses`). Imports nothing of the project."""
