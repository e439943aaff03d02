"""MODEL patch objects (attention replacements, wrappers); these may import comfy."""
