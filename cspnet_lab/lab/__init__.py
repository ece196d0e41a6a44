"""What the chapters show: figures, explorers, tables, glue, reference numbers and the chapter 7
experiments. Imports everything below it; nothing below imports it."""
