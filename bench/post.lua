-- wrk script: every request is a POST with an empty body (POST /counter/<name>).
wrk.method = "POST"
wrk.body = ""
