"""Development tools shipped beside Entitle (optional extras); the `entitle` package never imports them."""
