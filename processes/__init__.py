"""Lava processes that Lava lacks. No scripts here: Lava imports every module beside a process while it looks
for process models."""
