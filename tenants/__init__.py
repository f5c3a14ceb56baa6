"""Tenants: API keys (salted hashes, constant-time compare), quotas and fairness, carbon budgets, audit.

Plain Python, no Ray and no HTTP: the gateway extracts the credential and maps these errors to its
statuses; the data plane asks the budgets what to do with a request and feeds them its carbon.
"""
