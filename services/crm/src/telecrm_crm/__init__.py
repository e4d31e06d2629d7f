"""The crm service: contacts, employees, events journal, tasks, projects and service tickets."""
