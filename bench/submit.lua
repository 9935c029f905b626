-- wrk script: POST a small chat request with the bearer key from the KEY env var.
wrk.method = "POST"
wrk.body = '{"request": {"model": "echo", "messages": [{"role": "user", "content": "How fast is chatq?"}]}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
