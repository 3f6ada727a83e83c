"""What only the paper's experiments need, apart from the toolkit: the 2-D toy (`toy2d`), the
patch and class-distance analyses of supplement B (`analysis`), the recipe generators of the
paper's tables and of the methods beyond it (`recipes`, `beyond_recipes`), and the runners that
train a table's cells over seeds and average them (`tables`, `toy_table`)."""
