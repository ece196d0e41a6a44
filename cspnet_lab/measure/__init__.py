"""What the book measures: costs (parameters, multiply-adds, memory traffic), gradient paths, timing and
memory (bench), and the statistics behind every interval. Imports ``models``, never ``train`` or ``lab``."""
