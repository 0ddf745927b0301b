"""The httpx2 client of the images API: requests, answers and errors, retry, SSE, downloads."""
