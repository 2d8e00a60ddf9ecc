"""Salesforce Flow actions (issue 17, docs/salesforce.md): the provisioning operations a Flow calls, each
safe to repeat, and the OpenAPI 3.0 document Salesforce External Services registers them from."""
