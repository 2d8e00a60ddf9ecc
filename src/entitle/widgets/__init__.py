"""Embeddable widgets for end customers (issue 15): a pricing table, a checkout and a customer portal as
standard Custom Elements in one ES module (`/widgets/v1/entitle.js`), the routes they call (a client key
and one customer's token), and the `/demo` page. See docs/widgets.md."""
