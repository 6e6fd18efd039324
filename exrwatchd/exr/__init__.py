"""OpenEXR header reading, completeness and inspection."""
