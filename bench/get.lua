-- wrk script: GET with the bearer key from the KEY env var.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
