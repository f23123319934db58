"""Survey: invitations for customers to complete a survey."""
