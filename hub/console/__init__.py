"""The admin web console: server-rendered pages for tenant members and operators.

Tenant scoping lives in one place, ``hub.console.scoping.TenantScopedView``; every tenant page uses it.
"""
